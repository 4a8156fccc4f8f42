// A new chat: its name, an optional picture, and who to invite.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Dialogs 1.3 as Dialogs
import QtQuick.Layouts 1.15
import "."

Dialog {
    id: dialog
    property string imageUrl: ""
    anchors.centerIn: Overlay.overlay
    width: 400
    modal: true
    title: qsTr("New chat")
    standardButtons: Dialog.Ok | Dialog.Cancel
    onOpened: { nameField.text = ""; inviteField.text = ""; imageUrl = ""; nameField.forceActiveFocus() }
    onAccepted: bridge.createRoom(nameField.text, imageUrl, inviteField.text)

    ColumnLayout {
        anchors.fill: parent
        spacing: 10
        RowLayout {
            spacing: 12
            Avatar {
                size: 64
                label: nameField.text
                source: dialog.imageUrl
                TapHandler { onTapped: picker.open() }
            }
            Button { text: qsTr("Choose a picture…"); onClicked: picker.open() }
        }
        InputField {
            id: nameField
            objectName: "roomNameField"
            Layout.fillWidth: true
            placeholderText: qsTr("Room name, e.g. 주말 등산 or Project X")
        }
        InputField {
            id: inviteField
            objectName: "inviteField"
            Layout.fillWidth: true
            placeholderText: qsTr("Invite user ids, separated by commas")
            onAccepted: dialog.accept()
        }
    }
    Dialogs.FileDialog {
        id: picker
        title: qsTr("Room picture")
        nameFilters: [qsTr("Pictures (*.png *.jpg *.jpeg *.gif *.bmp *.webp)")]
        onAccepted: dialog.imageUrl = fileUrl.toString()
    }
}
