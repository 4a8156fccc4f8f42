// Writing a message: multi-line text (Enter sends, Shift+Enter starts a new line), a picture
// from a file, and the emoticon picker.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Dialogs 1.3 as Dialogs
import QtQuick.Layouts 1.15
import "."

Rectangle {
    id: root
    color: "white"
    implicitHeight: Math.min(180, Math.max(64, input.implicitHeight + 24))

    signal sent()   // something was handed to the bridge to send

    function send() {
        Qt.inputMethod.commit()   // a Hangul syllable still being composed belongs to the message
        if (input.text.trim().length === 0)
            return
        bridge.sendText(input.text)
        input.clear()
        sent()
    }

    Rectangle { width: parent.width; height: 1; color: Theme.line }

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 6

        IconButton {
            id: emoticonButton
            Layout.alignment: Qt.AlignBottom
            glyph: "☺"
            glyphSize: 24
            tip: qsTr("Emoticons")
            onClicked: picker.opened ? picker.close() : picker.open()
        }
        IconButton {
            Layout.alignment: Qt.AlignBottom
            glyph: "🖼"
            glyphSize: 20
            tip: qsTr("Send a picture")
            onClicked: fileDialog.open()
        }
        ScrollView {
            Layout.fillWidth: true
            Layout.fillHeight: true
            TextArea {
                id: input
                objectName: "composerInput"
                placeholderText: qsTr("Enter a message")
                wrapMode: TextEdit.Wrap
                selectByMouse: true
                font.pixelSize: Theme.fontNormal
                color: Theme.ink
                background: null
                focus: true
                Keys.onReturnPressed: function(event) { root.onEnter(event) }
                Keys.onEnterPressed: function(event) { root.onEnter(event) }
            }
        }
        PrimaryButton {
            Layout.alignment: Qt.AlignBottom
            implicitWidth: 64
            implicitHeight: 36
            text: qsTr("Send")
            tint: Theme.yellow
            textColour: Theme.ink
            enabled: input.text.trim().length > 0
            onClicked: root.send()
        }
    }

    function onEnter(event) {
        if (event.modifiers & Qt.ShiftModifier) {
            event.accepted = false      // the text area inserts the new line
            return
        }
        event.accepted = true
        send()
    }

    EmoticonPicker {
        id: picker
        objectName: "emoticonPicker"
        onSent: root.sent()
        x: 8
        y: -height - 6
    }
    Dialogs.FileDialog {
        id: fileDialog
        title: qsTr("Send a picture")
        selectMultiple: true
        nameFilters: [qsTr("Pictures (*.png *.jpg *.jpeg *.gif *.bmp *.webp)"), qsTr("All files (*)")]
        onAccepted: {
            for (var i = 0; i < fileUrls.length; ++i)
                bridge.sendImage(fileUrls[i].toString())
            root.sent()
        }
    }
}
