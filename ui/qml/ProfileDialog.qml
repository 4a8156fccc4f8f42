// Your own profile: display name and picture.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Dialogs 1.3 as Dialogs
import QtQuick.Layouts 1.15
import "."

Dialog {
    id: dialog
    property string imageUrl: ""
    anchors.centerIn: Overlay.overlay
    width: 360
    modal: true
    title: qsTr("My profile")
    standardButtons: Dialog.Save | Dialog.Cancel
    onOpened: { nameField.text = bridge.userName; imageUrl = "" }
    onAccepted: {
        if (nameField.text !== bridge.userName || imageUrl.length)
            bridge.setProfile(nameField.text !== bridge.userName ? nameField.text : "", imageUrl)
    }

    ColumnLayout {
        anchors.fill: parent
        spacing: 10
        Avatar {
            Layout.alignment: Qt.AlignHCenter
            size: 88
            label: nameField.text
            source: dialog.imageUrl.length ? dialog.imageUrl : bridge.avatarSource
            TapHandler { onTapped: picker.open() }
            HoverHandler { cursorShape: Qt.PointingHandCursor }
        }
        Button {
            Layout.alignment: Qt.AlignHCenter
            text: qsTr("Change picture…")
            onClicked: picker.open()
        }
        Label { text: qsTr("User id: %1").arg(bridge.userId); color: Theme.subtle }
        InputField {
            id: nameField
            Layout.fillWidth: true
            placeholderText: qsTr("Display name")
            onAccepted: dialog.accept()
        }
    }
    Dialogs.FileDialog {
        id: picker
        title: qsTr("Profile picture")
        nameFilters: [qsTr("Pictures (*.png *.jpg *.jpeg *.gif *.bmp *.webp)")]
        onAccepted: dialog.imageUrl = fileUrl.toString()
    }
}
